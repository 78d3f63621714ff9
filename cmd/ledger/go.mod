module github.com/marketledger/ledger/cmd/ledger

go 1.26
