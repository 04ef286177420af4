from services.payment.entrypoints.main import main

main()
