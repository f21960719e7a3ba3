// Every study-level ASSERTS relationship, to compare a graph's content with the
// docstore's or with another graph's (ordered, so equal graphs give equal lists).
// params: none
// returns: study_id, concept, assertion, count
// mode: read
MATCH (s:Study)-[a:ASSERTS]->(c:Concept)
RETURN s.id AS study_id, c.id AS concept, a.assertion AS assertion, a.count AS count
ORDER BY study_id, concept
