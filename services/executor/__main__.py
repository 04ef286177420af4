from services.executor.entrypoints.main import main

main()
