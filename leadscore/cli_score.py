"""`leadscore score`: batch scoring of every lead with reasons."""
