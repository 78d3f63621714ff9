module github.com/marketledger/ledger/services/policy

go 1.26
