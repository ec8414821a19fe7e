"""``python -m sidecar.config`` prints the README's key table, generated from the schema."""

from sidecar.config.schema import markdown_table

print(markdown_table())
