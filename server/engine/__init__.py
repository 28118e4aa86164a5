"""The batched, latest-wins render loop."""
