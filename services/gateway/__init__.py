"""The GraphQL gateway: queries over the read models, mutations as commands, subscriptions from JetStream."""
