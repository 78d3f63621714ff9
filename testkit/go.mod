module github.com/marketledger/ledger/testkit

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/marketledger/ledger/events v0.0.0
	github.com/nats-io/nats-server/v2 v2.15.2
	github.com/nats-io/nats.go v1.55.0
	github.com/synadia-io/orbit.go/jetstreamext v0.3.2
	golang.org/x/mod v0.41.0
	pgregory.net/rapid v1.3.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.8.0-default-no-op // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/marketledger/ledger/contracts v0.0.0
	github.com/marketledger/ledger/node v0.0.0
	github.com/marketledger/ledger/projections v0.0.0
	github.com/marketledger/ledger/runtime v0.0.0
	github.com/marketledger/ledger/services/checkout v0.0.0-00010101000000-000000000000
	github.com/marketledger/ledger/services/listing v0.0.0-00010101000000-000000000000
	github.com/marketledger/ledger/services/order v0.0.0-00010101000000-000000000000
	github.com/marketledger/ledger/services/payment v0.0.0-00010101000000-000000000000
	github.com/marketledger/ledger/services/policy v0.0.0-00010101000000-000000000000
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/nats-io/jwt/v2 v2.8.2 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/synadia-io/orbit.go/natsext v0.1.3 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)

replace github.com/marketledger/ledger/events => ../events

tool github.com/nats-io/nats-server/v2

replace github.com/marketledger/ledger/contracts => ../contracts

replace github.com/marketledger/ledger/projections => ../projections

replace github.com/marketledger/ledger/services/listing => ../services/listing

replace github.com/marketledger/ledger/services/order => ../services/order

replace github.com/marketledger/ledger/services/payment => ../services/payment

replace github.com/marketledger/ledger/services/policy => ../services/policy

replace github.com/marketledger/ledger/services/checkout => ../services/checkout

replace github.com/marketledger/ledger/adapters/eventstoredb => ../adapters/eventstoredb

replace github.com/marketledger/ledger/cmd/ledger => ../cmd/ledger

replace github.com/marketledger/ledger/node => ../node

replace github.com/marketledger/ledger/runtime => ../runtime
