// Content hash of every Study node, as the last completed ingest write left it
// (null while a write is in progress), to check the graph against the docstore.
// params: none
// returns: id, content_hash
// mode: read
MATCH (s:Study)
RETURN s.id AS id, s.content_hash AS content_hash
