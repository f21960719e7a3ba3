// The accepted causal graph for exact inference: every concept with its leak and its
// accepted parents (CAUSES edges point image finding -> finding -> diagnosis, so a
// concept's parents are what a reader reasons from).  Non-accepted edges are dropped
// in the collect, not in the OPTIONAL MATCH (a filtered OPTIONAL MATCH is several
// times slower on FalkorDB).  One row per concept; parents is a list of [id, p].
// params: none
// returns: id, leak, parents
// mode: read
MATCH (c:Concept)
OPTIONAL MATCH (c)<-[r:CAUSES]-(u:Concept)
RETURN c.id AS id, c.leak AS leak,
       collect(CASE WHEN r.status = 'accepted' THEN [u.id, r.p] END) AS parents
ORDER BY id
