"""`python -m services.wallet`: runs the wallet service until SIGINT/SIGTERM."""

from services.wallet.entrypoints.main import main

main()
