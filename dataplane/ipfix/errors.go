package ipfix

// Error is a decoding failure with a fixed reason. Every value is a
// preallocated sentinel so rejecting malformed input never allocates; Reason
// is a short label suitable for a drop counter.
type Error struct {
	reason string
	msg    string
}

func newError(reason, msg string) *Error { return &Error{reason: reason, msg: "ipfix: " + msg} }

func (e *Error) Error() string { return e.msg }

// Reason is a short, stable label (snake_case) for metrics.
func (e *Error) Reason() string { return e.reason }

// Sentinel errors, one per reason. Compare with errors.Is.
var (
	ErrShortMessage      = newError("short_message", "message shorter than its header")
	ErrVersion           = newError("bad_version", "unsupported version")
	ErrMessageLength     = newError("bad_message_length", "message length does not match the buffer")
	ErrShortSet          = newError("short_set", "set header truncated")
	ErrSetLength         = newError("bad_set_length", "set length below 4 or past the message end")
	ErrTemplateShort     = newError("short_template", "template record truncated or field count beyond the set")
	ErrTemplateID        = newError("bad_template_id", "template ID below 256")
	ErrScopeCount        = newError("bad_scope_count", "scope field count larger than field count")
	ErrZeroLengthRecord  = newError("zero_length_record", "template describes a zero-length record")
	ErrTemplateTooLarge  = newError("template_too_large", "template record longer than a message can carry")
	ErrShortRecord       = newError("short_record", "data record truncated")
	ErrVarlenLength      = newError("bad_varlen_length", "variable-length field runs past the record")
	ErrListMalformed     = newError("bad_list", "structured data list malformed")
	ErrListDepth         = newError("list_too_deep", "structured data lists nested too deeply")
	ErrV5Count           = newError("bad_v5_count", "netflow v5 record count does not match the length")
	ErrUnknownTemplate   = newError("unknown_template", "data set for an unknown template")
	ErrTemplateFieldSize = newError("bad_field_length", "field length invalid for its type")
)

// Errors lists every sentinel error, for registering drop counters up front.
var Errors = []*Error{
	ErrShortMessage, ErrVersion, ErrMessageLength, ErrShortSet, ErrSetLength,
	ErrTemplateShort, ErrTemplateID, ErrScopeCount, ErrZeroLengthRecord,
	ErrTemplateTooLarge, ErrShortRecord, ErrVarlenLength, ErrListMalformed,
	ErrListDepth, ErrV5Count, ErrUnknownTemplate, ErrTemplateFieldSize,
}

// Reason returns the drop-counter label for err: its Reason if it is one of
// this package's errors, "other" otherwise.
func Reason(err error) string {
	if e, ok := err.(*Error); ok {
		return e.reason
	}
	return "other"
}
