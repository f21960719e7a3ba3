// Delete CAUSES edges by (src, dst).
// params: $keys
// returns: none
// mode: write
UNWIND $keys AS k
MATCH (:Concept {id: k.src})-[r:CAUSES]->(:Concept {id: k.dst})
DELETE r
