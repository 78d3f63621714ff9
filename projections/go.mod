module github.com/marketledger/ledger/projections

go 1.26
