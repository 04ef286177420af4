"""PaymentGateway implementations: Stripe (and the PSP sandbox, which speaks Stripe's API) and a fake."""
