package contracts

// Codec turns the contracts' typed payloads into event bodies and back: the
// command runner's codec (runtime/command.Codec) for every service, so that
// no service carries its own adapter.
type Codec struct{}

// Encode returns the type, schema version and JSON body of a payload.
func (Codec) Encode(v any) (string, int, []byte, error) { return Encode(v) }

// Decode returns the current typed payload of a stored body, upcast from
// older versions.
func (Codec) Decode(typ string, version int, data []byte) (any, error) {
	return Decode(typ, version, data)
}
