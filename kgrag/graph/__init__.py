"""Graph-engine layer: the GraphStore protocol, the FalkorDB and Neo4j backends, the embedded server and pipelined calls. The only package that talks to a graph engine."""
