module github.com/marketledger/ledger/services/listing

go 1.26
