// Read a graph-level metadata value.
// params: $key
// returns: value
// mode: read
MATCH (m:KgragMeta {key: $key})
RETURN m.value AS value
