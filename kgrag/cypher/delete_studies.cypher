// Delete studies and their ASSERTS relationships.
// params: $ids
// returns: none
// mode: write
UNWIND $ids AS sid
MATCH (s:Study {id: sid})
DETACH DELETE s
