module github.com/marketledger/ledger/services/payment

go 1.26
