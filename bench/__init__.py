"""`make bench`: Switchboard's speed, measured against a direct call and LiteLLM proxy."""
