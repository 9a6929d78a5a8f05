"""`caption`: shards in, the same shards out with the prompt written by a vision-language model
from the interaction video (the source's prompt as hints), then optionally rewritten by a
language model, as the official data's `prompts/` and `prompts_rewrite/` were made."""
