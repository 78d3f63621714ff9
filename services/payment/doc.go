package payment
