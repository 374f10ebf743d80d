"""A tenant's knowledge (documents) and inventory (structured items): one service
(`service.KnowledgeService`) over one search interface (`index.KnowledgeIndex`) with two
backends, the database (the embedded default) and Weaviate (`LEADFLOW_WEAVIATE_URL`)."""
