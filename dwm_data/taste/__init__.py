"""Real fixed-camera clips (TASTE-Rob or any folder of clips) -> triplets with estimated hands."""
