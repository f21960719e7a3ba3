// CAUSES edges, optionally of one status (null = all).
// params: $status
// returns: src, dst, src_role, dst_role, props
// mode: read
MATCH (a:Concept)-[r:CAUSES]->(b:Concept)
WHERE $status IS NULL OR r.status = $status
RETURN a.id AS src, b.id AS dst, a.role AS src_role, b.role AS dst_role, properties(r) AS props
ORDER BY src, dst
