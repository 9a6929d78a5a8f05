"""The official DWM folder layout: `<root>/<scene>/<rec>/{videos,videos_static,videos_hands,
prompts_rewrite}/<stem>.{mp4,txt}`, imported into shards and exported back."""

SUBDIRS = {"video": "videos", "static": "videos_static", "hand": "videos_hands"}
PROMPT_DIRS = ("prompts_rewrite", "prompts")  # training uses the rewritten prompts
# The official data root's top folders, and the source whose codec settings each one's data has.
OFFICIAL_ROOTS = {"trumans": "trumans", "taste_rob": "taste", "realworld": "aria"}
