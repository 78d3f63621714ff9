module github.com/marketledger/ledger/testkit

go 1.26
