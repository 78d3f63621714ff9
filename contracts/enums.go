package contracts

// Channel is the sales channel a listing is offered on. Permendag 31/2023
// treats the two differently: social commerce may promote but not transact.
type Channel string

// The sales channels.
const (
	ChannelMarketplace    Channel = "marketplace"
	ChannelSocialCommerce Channel = "social_commerce"
)

// Channels lists every Channel, in schema order.
var Channels = []Channel{ChannelMarketplace, ChannelSocialCommerce}

// Origin says whether goods ship from within the jurisdiction or from abroad.
type Origin string

// The origins.
const (
	OriginDomestic    Origin = "domestic"
	OriginCrossBorder Origin = "cross_border"
)

// Origins lists every Origin, in schema order.
var Origins = []Origin{OriginDomestic, OriginCrossBorder}

// Operation names an operation a policy rule can block. Operations are the
// names of the commands that create trade, so a service checks a rule with
// the name of the command it is deciding.
type Operation string

// The operations a rule may block. Refunds, voids, cancellations and
// settlement are deliberately absent: a regulator stops new trade, never the
// unwinding of old trade.
const (
	OpListingCreate      Operation = "listing.create"
	OpListingChangePrice Operation = "listing.change_price"
	OpOrderPlace         Operation = "order.place"
	OpPaymentAuthorize   Operation = "payment.authorize"
	OpPaymentCapture     Operation = "payment.capture"
)

// Operations lists every blockable Operation, in schema order.
var Operations = []Operation{OpListingCreate, OpListingChangePrice, OpOrderPlace, OpPaymentAuthorize, OpPaymentCapture}

// FreezeOperations are what a freeze blocks when its command names none:
// new orders, payment authorization and capture (DESIGN section 5).
var FreezeOperations = []Operation{OpOrderPlace, OpPaymentAuthorize, OpPaymentCapture}

// RuleKind is the kind of a policy rule.
type RuleKind string

// The rule kinds.
const (
	RuleFreeze     RuleKind = "freeze"
	RuleFloorPrice RuleKind = "floor_price"
)

// RuleKinds lists every RuleKind, in schema order.
var RuleKinds = []RuleKind{RuleFreeze, RuleFloorPrice}

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool { return c == ChannelMarketplace || c == ChannelSocialCommerce }

// Valid reports whether o is a known origin.
func (o Origin) Valid() bool { return o == OriginDomestic || o == OriginCrossBorder }

// Valid reports whether op is a blockable operation.
func (op Operation) Valid() bool {
	for _, o := range Operations {
		if o == op {
			return true
		}
	}
	return false
}

// Activation says how a policy change takes effect: at a position in the
// log, never at a bare instant (ADR 0004).
type Activation string

// The activations.
const (
	// ActivationOnRecording: the change event is its own activation; it is
	// in force for every event stored after it.
	ActivationOnRecording Activation = "on_recording"
	// ActivationScheduled: the change waits for its policy.rule_activated
	// event, which the policy service appends when its clock reaches the
	// change's effective_at. A change with no activation field (written
	// before activations existed) is read as scheduled.
	ActivationScheduled Activation = "scheduled"
)

// Activations lists every Activation, in schema order.
var Activations = []Activation{ActivationOnRecording, ActivationScheduled}

// Valid reports whether a is a known activation.
func (a Activation) Valid() bool { return a == ActivationOnRecording || a == ActivationScheduled }

// PolicyChange names the policy event a policy.rule_activated activates
// (the event name within the policy context).
type PolicyChange string

// The policy changes an activation can activate.
const (
	ChangeFreezeImposed    PolicyChange = "freeze_imposed"
	ChangeFreezeLifted     PolicyChange = "freeze_lifted"
	ChangeFloorPriceSet    PolicyChange = "floor_price_set"
	ChangeFloorPriceLifted PolicyChange = "floor_price_lifted"
)

// PolicyChanges lists every PolicyChange, in schema order.
var PolicyChanges = []PolicyChange{ChangeFreezeImposed, ChangeFreezeLifted, ChangeFloorPriceSet, ChangeFloorPriceLifted}

// Valid reports whether c is a known policy change.
func (c PolicyChange) Valid() bool {
	return c == ChangeFreezeImposed || c == ChangeFreezeLifted || c == ChangeFloorPriceSet || c == ChangeFloorPriceLifted
}
