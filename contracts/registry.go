package contracts

import (
	"reflect"
	"sort"
	"strings"
)

// The services (and the notary) that publish and subscribe. They are also
// the CloudEvents sources: "/ledger/<service>".
const (
	ServiceListing     = "listing"
	ServiceOrder       = "order"
	ServicePayment     = "payment"
	ServicePolicy      = "policy"
	ServiceNotary      = "notary"
	ServiceProjections = "projections"
)

// Source returns the CloudEvents source of a service ("/ledger/order").
func Source(service string) string { return "/ledger/" + service }

// NotaryAggregateID is the aggregate id of the notary's log: its
// checkpoints are the events of aggregate notary/log.
const NotaryAggregateID = "log"

// EventSpec describes one version of one event type.
type EventSpec struct {
	// Type is "<context>.<name>", lower snake case.
	Type string
	// Version is the schema version (1, 2, ...).
	Version int
	// Context is the bounded context, the first part of Type and the second
	// token of the subject.
	Context string
	// Publisher is the only service that appends the type.
	Publisher string
	// Subscribers are the services that may consume it.
	Subscribers []string
	// AggregateField is the JSON field whose value is the aggregate id (the
	// subject's third token); empty when the aggregate id is not in the body.
	AggregateField string
	// Description says what fact the event records.
	Description string
	// GoType is the Go struct of this version.
	GoType reflect.Type
	// Upcast turns a value of GoType into the next version's GoType; nil for
	// the current version.
	Upcast func(any) any
}

// Name returns the event name within its context ("placed").
func (s EventSpec) Name() string { _, n, _ := strings.Cut(s.Type, "."); return n }

// Current reports whether this is the version new events are written with.
func (s EventSpec) Current() bool { return s.Upcast == nil }

// CommandSpec describes one command.
type CommandSpec struct {
	// Name is "<context>.<verb>", the name services route on and the
	// Operation a policy rule blocks.
	Name string
	// Context is the bounded context whose service handles the command.
	Context string
	// Service is the service that decides it.
	Service string
	// Callers are the services and clients expected to send it.
	Callers []string
	// Emits are the event types a successful decision may append.
	Emits []string
	// Description says what the command asks for.
	Description string
	// GoType is the Go struct of the command body.
	GoType reflect.Type
	// Aggregate is the JSON field of the body naming the aggregate the
	// command is decided on ("listing_id").
	Aggregate string
	// Fenced is true for the commands a policy rule can block: they are
	// decided under the policy view and appended fenced (ADR 0004). The
	// others must never wait on the policy.
	Fenced bool
}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

var (
	allServices   = []string{ServiceListing, ServiceOrder, ServicePayment, ServicePolicy, ServiceProjections}
	tradeReaders  = []string{ServiceOrder, ServicePayment, ServiceProjections}
	policyReaders = []string{ServiceListing, ServiceOrder, ServicePayment, ServiceProjections}
)

// Events lists every (type, version) of the ledger, sorted by type then
// version. It is the source of the schemas, the AsyncAPI document and the
// catalogue; nothing else declares an event.
var Events = sortedEvents([]EventSpec{
	{Type: "listing.created", Version: 1, Publisher: ServiceListing, Subscribers: tradeReaders, AggregateField: "listing_id",
		Description: "A seller created a listing, offered from now on.", GoType: typeOf[ListingCreated]()},
	{Type: "listing.price_changed", Version: 1, Publisher: ServiceListing, Subscribers: tradeReaders, AggregateField: "listing_id",
		Description: "A listing's unit price changed; earlier orders keep their price.", GoType: typeOf[ListingPriceChanged]()},
	{Type: "listing.stock_changed", Version: 1, Publisher: ServiceListing, Subscribers: tradeReaders, AggregateField: "listing_id",
		Description: "A seller set the units available.", GoType: typeOf[ListingStockChanged]()},
	{Type: "listing.stock_reserved", Version: 1, Publisher: ServiceListing, Subscribers: tradeReaders, AggregateField: "listing_id",
		Description: "Units were held for an order.", GoType: typeOf[ListingStockReserved]()},
	{Type: "listing.stock_released", Version: 1, Publisher: ServiceListing, Subscribers: tradeReaders, AggregateField: "listing_id",
		Description: "Units held for an order were given back.", GoType: typeOf[ListingStockReleased]()},
	{Type: "listing.delisted", Version: 1, Publisher: ServiceListing, Subscribers: tradeReaders, AggregateField: "listing_id",
		Description: "A listing was withdrawn for good.", GoType: typeOf[ListingDelisted]()},

	{Type: "order.placed", Version: 1, Publisher: ServiceOrder, Subscribers: allServices, AggregateField: "order_id",
		Description: "An order was accepted (before sales channels existed; read as version 2 with channel marketplace).",
		GoType:      typeOf[OrderPlacedV1](), Upcast: func(v any) any { return UpcastOrderPlacedV1(v.(OrderPlacedV1)) }},
	{Type: "order.placed", Version: 2, Publisher: ServiceOrder, Subscribers: allServices, AggregateField: "order_id",
		Description: "An order was accepted at the listing's price and attributes of the moment, its stock reserved.", GoType: typeOf[OrderPlaced]()},
	{Type: "order.confirmed", Version: 1, Publisher: ServiceOrder, Subscribers: allServices, AggregateField: "order_id",
		Description: "The order's payment was authorized; the seller may ship.", GoType: typeOf[OrderConfirmed]()},
	{Type: "order.cancelled", Version: 1, Publisher: ServiceOrder, Subscribers: allServices, AggregateField: "order_id",
		Description: "The order was cancelled before shipping.", GoType: typeOf[OrderCancelled]()},
	{Type: "order.shipped", Version: 1, Publisher: ServiceOrder, Subscribers: allServices, AggregateField: "order_id",
		Description: "The seller handed the goods to a carrier.", GoType: typeOf[OrderShipped]()},
	{Type: "order.completed", Version: 1, Publisher: ServiceOrder, Subscribers: allServices, AggregateField: "order_id",
		Description: "The buyer received the goods; the payment may be settled.", GoType: typeOf[OrderCompleted]()},
	{Type: "order.rejected", Version: 1, Publisher: ServiceOrder, Subscribers: allServices, AggregateField: "order_id",
		Description: "The checkout could not complete (payment failed, a rule refused it, timeout).", GoType: typeOf[OrderRejected]()},

	{Type: "payment.authorized", Version: 1, Publisher: ServicePayment, Subscribers: tradeReaders, AggregateField: "payment_id",
		Description: "A pending two-phase transfer from the buyer to escrow was reserved.", GoType: typeOf[PaymentAuthorized]()},
	{Type: "payment.authorization_failed", Version: 1, Publisher: ServicePayment, Subscribers: tradeReaders, AggregateField: "payment_id",
		Description: "A payment could not be authorized; nothing was reserved.", GoType: typeOf[PaymentAuthorizationFailed]()},
	{Type: "payment.captured", Version: 1, Publisher: ServicePayment, Subscribers: tradeReaders, AggregateField: "payment_id",
		Description: "Authorized money moved from the buyer into the order's escrow.", GoType: typeOf[PaymentCaptured]()},
	{Type: "payment.voided", Version: 1, Publisher: ServicePayment, Subscribers: tradeReaders, AggregateField: "payment_id",
		Description: "An authorization was released without capture.", GoType: typeOf[PaymentVoided]()},
	{Type: "payment.cancelled", Version: 1, Publisher: ServicePayment, Subscribers: tradeReaders, AggregateField: "payment_id",
		Description: "A void came before any authorization: the payment id is spent and a later authorization is refused.", GoType: typeOf[PaymentCancelled]()},
	{Type: "payment.refunded", Version: 1, Publisher: ServicePayment, Subscribers: tradeReaders, AggregateField: "payment_id",
		Description: "Captured money was returned to the buyer, in full or in part.", GoType: typeOf[PaymentRefunded]()},
	{Type: "payment.settled", Version: 1, Publisher: ServicePayment, Subscribers: tradeReaders, AggregateField: "payment_id",
		Description: "A completed order was paid out to the seller, less the platform fee.", GoType: typeOf[PaymentSettled]()},

	{Type: "policy.freeze_imposed", Version: 1, Publisher: ServicePolicy, Subscribers: policyReaders, AggregateField: "rule_id",
		Description: "A freeze: from its activation (this event, or its policy.rule_activated when scheduled) the blocked operations in scope are refused.", GoType: typeOf[FreezeImposed]()},
	{Type: "policy.freeze_lifted", Version: 1, Publisher: ServicePolicy, Subscribers: policyReaders, AggregateField: "rule_id",
		Description: "A freeze ends from the lift's activation (this event, or its policy.rule_activated when scheduled).", GoType: typeOf[FreezeLifted]()},
	{Type: "policy.floor_price_set", Version: 1, Publisher: ServicePolicy, Subscribers: policyReaders, AggregateField: "rule_id",
		Description: "A minimum unit price: from its activation the blocked operations in scope are refused below it.", GoType: typeOf[FloorPriceSet]()},
	{Type: "policy.floor_price_lifted", Version: 1, Publisher: ServicePolicy, Subscribers: policyReaders, AggregateField: "rule_id",
		Description: "A floor price ends from the lift's activation (this event, or its policy.rule_activated when scheduled).", GoType: typeOf[FloorPriceLifted]()},
	{Type: "policy.rule_activated", Version: 1, Publisher: ServicePolicy, Subscribers: policyReaders, AggregateField: "rule_id",
		Description: "A scheduled policy change takes effect: every event stored after this one is judged under it.", GoType: typeOf[RuleActivated]()},

	{Type: "enforcement.command_refused", Version: 1, Publisher: ServiceEnforcement, Subscribers: []string{ServiceProjections}, AggregateField: "refusal_id",
		Description: "A service refused a command because a policy rule blocked it; nothing else of the command was appended. At most one per command (ADR 0020).", GoType: typeOf[CommandRefused]()},

	{Type: "notary.checkpointed", Version: 1, Publisher: ServiceNotary, Subscribers: []string{ServiceProjections},
		Description: "A signed Merkle checkpoint of the global log up to a position.", GoType: typeOf[NotaryCheckpointed]()},
})

// Commands lists every command, sorted by name.
var Commands = sortedCommands([]CommandSpec{
	{Name: "listing.create", Service: ServiceListing, Callers: []string{"seller"}, Emits: []string{"listing.created"},
		Description: "Create a listing.", GoType: typeOf[CreateListing](), Aggregate: "listing_id", Fenced: true},
	{Name: "listing.change_price", Service: ServiceListing, Callers: []string{"seller"}, Emits: []string{"listing.price_changed"},
		Description: "Change a listing's unit price.", GoType: typeOf[ChangePrice](), Aggregate: "listing_id", Fenced: true},
	{Name: "listing.change_stock", Service: ServiceListing, Callers: []string{"seller"}, Emits: []string{"listing.stock_changed"},
		Description: "Set the units available.", GoType: typeOf[ChangeStock](), Aggregate: "listing_id"},
	{Name: "listing.delist", Service: ServiceListing, Callers: []string{"seller", "operator"}, Emits: []string{"listing.delisted"},
		Description: "Withdraw a listing for good.", GoType: typeOf[Delist](), Aggregate: "listing_id"},
	{Name: "listing.reserve_stock", Service: ServiceListing, Callers: []string{ServiceOrder}, Emits: []string{"listing.stock_reserved"},
		Description: "Hold units for an order.", GoType: typeOf[ReserveStock](), Aggregate: "listing_id"},
	{Name: "listing.release_stock", Service: ServiceListing, Callers: []string{ServiceOrder}, Emits: []string{"listing.stock_released"},
		Description: "Give back the units held for an order.", GoType: typeOf[ReleaseStock](), Aggregate: "listing_id"},

	{Name: "order.place", Service: ServiceOrder, Callers: []string{"buyer"}, Emits: []string{"order.placed"},
		Description: "Order units of a listing at its current price.", GoType: typeOf[PlaceOrder](), Aggregate: "order_id", Fenced: true},
	{Name: "order.confirm", Service: ServiceOrder, Callers: []string{ServiceOrder}, Emits: []string{"order.confirmed"},
		Description: "Confirm an order whose payment is authorized (checkout process manager).", GoType: typeOf[ConfirmOrder](), Aggregate: "order_id"},
	{Name: "order.cancel", Service: ServiceOrder, Callers: []string{"buyer", "seller", ServiceOrder}, Emits: []string{"order.cancelled"},
		Description: "Cancel an order that has not shipped.", GoType: typeOf[CancelOrder](), Aggregate: "order_id"},
	{Name: "order.reject", Service: ServiceOrder, Callers: []string{ServiceOrder}, Emits: []string{"order.rejected"},
		Description: "Reject a placed order whose checkout failed (checkout process manager).", GoType: typeOf[RejectOrder](), Aggregate: "order_id"},
	{Name: "order.ship", Service: ServiceOrder, Callers: []string{"seller"}, Emits: []string{"order.shipped"},
		Description: "Mark a confirmed order shipped.", GoType: typeOf[ShipOrder](), Aggregate: "order_id"},
	{Name: "order.complete", Service: ServiceOrder, Callers: []string{"buyer", "carrier"}, Emits: []string{"order.completed"},
		Description: "Mark a shipped order delivered.", GoType: typeOf[CompleteOrder](), Aggregate: "order_id"},

	{Name: "payment.authorize", Service: ServicePayment, Callers: []string{ServiceOrder}, Emits: []string{"payment.authorized", "payment.authorization_failed"},
		Description: "Reserve the order's total as a pending transfer.", GoType: typeOf[AuthorizePayment](), Aggregate: "payment_id", Fenced: true},
	{Name: "payment.capture", Service: ServicePayment, Callers: []string{ServiceOrder}, Emits: []string{"payment.captured"},
		Description: "Capture an authorization into escrow.", GoType: typeOf[CapturePayment](), Aggregate: "payment_id", Fenced: true},
	{Name: "payment.void", Service: ServicePayment, Callers: []string{ServiceOrder}, Emits: []string{"payment.voided", "payment.cancelled"},
		Description: "Release an authorization without capture; before any authorization, spend the payment id.", GoType: typeOf[VoidPayment](), Aggregate: "payment_id"},
	{Name: "payment.refund", Service: ServicePayment, Callers: []string{"operator", ServiceOrder}, Emits: []string{"payment.refunded"},
		Description: "Return captured money to the buyer.", GoType: typeOf[RefundPayment](), Aggregate: "payment_id"},
	{Name: "payment.settle", Service: ServicePayment, Callers: []string{"operator", ServiceOrder}, Emits: []string{"payment.settled"},
		Description: "Pay a completed order out to the seller less the platform fee.", GoType: typeOf[SettlePayment](), Aggregate: "payment_id"},

	{Name: "policy.impose_freeze", Service: ServicePolicy, Callers: []string{"regulator", "operator"}, Emits: []string{"policy.freeze_imposed"},
		Description: "Impose a freeze.", GoType: typeOf[ImposeFreeze](), Aggregate: "rule_id"},
	{Name: "policy.lift_freeze", Service: ServicePolicy, Callers: []string{"regulator", "operator"}, Emits: []string{"policy.freeze_lifted"},
		Description: "Lift a freeze.", GoType: typeOf[LiftFreeze](), Aggregate: "rule_id"},
	{Name: "policy.set_floor_price", Service: ServicePolicy, Callers: []string{"regulator", "operator"}, Emits: []string{"policy.floor_price_set"},
		Description: "Set a floor price.", GoType: typeOf[SetFloorPrice](), Aggregate: "rule_id"},
	{Name: "policy.lift_floor_price", Service: ServicePolicy, Callers: []string{"regulator", "operator"}, Emits: []string{"policy.floor_price_lifted"},
		Description: "Lift a floor price.", GoType: typeOf[LiftFloorPrice](), Aggregate: "rule_id"},
})

func sortedEvents(specs []EventSpec) []EventSpec {
	for i := range specs {
		specs[i].Context, _, _ = strings.Cut(specs[i].Type, ".")
	}
	sort.SliceStable(specs, func(i, j int) bool {
		if specs[i].Type != specs[j].Type {
			return specs[i].Type < specs[j].Type
		}
		return specs[i].Version < specs[j].Version
	})
	return specs
}

func sortedCommands(specs []CommandSpec) []CommandSpec {
	for i := range specs {
		specs[i].Context, _, _ = strings.Cut(specs[i].Name, ".")
	}
	sort.SliceStable(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs
}

type eventKey struct {
	typ     string
	version int
}

var (
	eventIndex   = map[eventKey]int{}
	currentIndex = map[string]int{}
	goTypeIndex  = map[reflect.Type]int{}
	commandIndex = map[string]int{}
	cmdGoIndex   = map[reflect.Type]int{}
)

func init() {
	for i, s := range Events {
		eventIndex[eventKey{s.Type, s.Version}] = i
		if s.Current() {
			currentIndex[s.Type] = i
		}
		goTypeIndex[s.GoType] = i
	}
	for i, c := range Commands {
		commandIndex[c.Name] = i
		cmdGoIndex[c.GoType] = i
		a, ok1 := fieldByJSON(c.GoType, c.Aggregate)
		k, ok2 := fieldByJSON(c.GoType, "idempotency_key")
		if !ok1 || !ok2 {
			panic("contracts: command " + c.Name + " lacks its aggregate field " + c.Aggregate + " or idempotency_key")
		}
		cmdFields[i] = cmdField{aggregate: a, key: k}
	}
}

// LookupEvent returns the spec of a type and version.
func LookupEvent(typ string, version int) (EventSpec, bool) {
	i, ok := eventIndex[eventKey{typ, version}]
	if !ok {
		return EventSpec{}, false
	}
	return Events[i], true
}

// CurrentVersion returns the version new events of typ are written with.
func CurrentVersion(typ string) (int, bool) {
	i, ok := currentIndex[typ]
	if !ok {
		return 0, false
	}
	return Events[i].Version, true
}

// EventTypes returns every event type once, sorted.
func EventTypes() []string {
	var out []string
	for _, s := range Events {
		if s.Current() {
			out = append(out, s.Type)
		}
	}
	return out
}

// TypeOf returns the event type and version of a value of a registered Go
// event type (a struct value, not a pointer).
func TypeOf(v any) (typ string, version int, ok bool) {
	i, ok := goTypeIndex[reflect.TypeOf(v)]
	if !ok {
		return "", 0, false
	}
	return Events[i].Type, Events[i].Version, true
}

// LookupCommand returns the spec of a command by name.
func LookupCommand(name string) (CommandSpec, bool) {
	i, ok := commandIndex[name]
	if !ok {
		return CommandSpec{}, false
	}
	return Commands[i], true
}

// CommandTarget is what the runtime needs to run a command: its spec, the id of
// the aggregate it is decided on and its idempotency key (empty: none).
type CommandTarget struct {
	Spec           CommandSpec
	AggregateID    string
	IdempotencyKey string
}

// TargetOf reads the target of a value of a registered command type (a
// struct value, not a pointer) from the fields its spec names.
func TargetOf(cmd any) (CommandTarget, bool) {
	i, ok := cmdGoIndex[reflect.TypeOf(cmd)]
	if !ok {
		return CommandTarget{}, false
	}
	v := reflect.ValueOf(cmd)
	f := cmdFields[i]
	return CommandTarget{Spec: Commands[i], AggregateID: v.Field(f.aggregate).String(), IdempotencyKey: v.Field(f.key).String()}, true
}

// cmdFields are the indexes of a command struct's aggregate and
// idempotency key fields.
type cmdField struct{ aggregate, key int }

var cmdFields = map[int]cmdField{}

// fieldByJSON returns the index of t's string field whose JSON name is name.
func fieldByJSON(t reflect.Type, name string) (int, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name && f.Type.Kind() == reflect.String {
			return i, true
		}
	}
	return 0, false
}

// CommandName returns the name of a value of a registered command type.
func CommandName(v any) (string, bool) {
	i, ok := cmdGoIndex[reflect.TypeOf(v)]
	if !ok {
		return "", false
	}
	return Commands[i].Name, true
}
