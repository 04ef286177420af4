"""A local stand-in for Stripe: the subset of its REST API Settle uses, with its formats, errors and
idempotency rules, plus fault injection and a record of every charge, refund and paid payout. It is the
outside world, not part of any service."""

from psp_sandbox.app import RunningSandbox, create_app, start_sandbox
from psp_sandbox.state import SandboxState

__all__ = ["RunningSandbox", "SandboxState", "create_app", "start_sandbox"]
