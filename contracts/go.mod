module github.com/marketledger/ledger/contracts

go 1.26
