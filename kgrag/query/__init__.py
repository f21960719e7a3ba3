"""The query path: route, observe V_I, stage-1 retrieval, rerank, filters, definitions, explanation, answer."""
