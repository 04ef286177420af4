from services.reconciliation.entrypoints.main import main

main()
