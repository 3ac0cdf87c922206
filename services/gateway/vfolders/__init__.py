"""Virtual folders in GraphQL (DESIGN.md §11): queries, mutations, transfer tokens, file
operations through the storage service, and the folder events subscription."""
