"""The device mesh (data / fsdp / model axes) and the shardings of the train state on it."""
