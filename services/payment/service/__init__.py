"""Payment use cases: creating payments, reading them, recording what happened to their orders."""
