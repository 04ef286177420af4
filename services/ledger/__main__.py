"""`python -m services.ledger`: runs the ledger service until SIGINT/SIGTERM."""

from services.ledger.entrypoints.main import main

main()
