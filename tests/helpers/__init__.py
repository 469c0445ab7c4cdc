"""Shared test helpers, imported as ``helpers.<module>`` (pytest's ``pythonpath`` puts tests/ on sys.path).

One module per job: ``results`` (the one SlotResult factory and the tree scenario), ``golden`` (golden files),
``llm`` (a scripted Anthropic wire, requests, PNGs), ``executor_harness`` (the executor contract harness),
``llm_harness`` (the LLM-backend contract harness), ``fake_claude`` (a fake ``claude`` CLI), ``replies`` (the
reply check's errors), ``fault_run`` (the controller in-process for the fault tests), ``agent_cli`` (the
controller as a subprocess), ``fake_anthropic`` (a local Anthropic API over TCP for the integration tests).
Fixtures stay in each folder's conftest.py.
"""
