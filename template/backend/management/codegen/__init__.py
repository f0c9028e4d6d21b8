"""Source code generation for models, schemas, routers and tests."""
