module github.com/marketledger/ledger/services/order

go 1.26
