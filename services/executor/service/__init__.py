"""The executor's use cases: accepting requests, executing charges, and the operators' admin actions."""
