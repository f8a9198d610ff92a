"""Training (torch): teachers, pairs, students, judges and the networks and data they share."""
