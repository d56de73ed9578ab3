"""The tags verifier puts on every AWS resource it creates: how cleanup finds them, and all it may touch."""

CREATED_BY = "verifier"
TAG_RUN_ID = "verifier:run-id"
TAG_CREATED_BY = "verifier:created-by"
TAG_EXPIRES_AT = "verifier:expires-at"
