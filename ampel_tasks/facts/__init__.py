"""Facts and commands per subject: for each (the archive, the image recipe, the env file,
the copies, the stack's processes, the manifests, ...) the commands that read or
change it and the pure parsers of what they print."""
