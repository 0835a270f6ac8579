"""The interaction engine: every door (REST, bundles, adapters, pathway steps) ends here."""
