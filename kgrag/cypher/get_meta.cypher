// Read a graph-level metadata value.
// params: $key
// returns: value
MATCH (m:KgragMeta {key: $key})
RETURN m.value AS value
