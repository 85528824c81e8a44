"""Numbers every stage agrees on (DESIGN §3): class names, target rate, cycle length."""

CLASS_NAMES: tuple[str, ...] = ("normal", "crackle", "wheeze", "both")  # label = crackle + 2*wheeze
SAMPLE_RATE: int = 22_000  # the original's rate: every recording is resampled to it
CYCLE_SECONDS: float = 8.0  # fixed cycle length: long cycles keep their tail, short ones tile
CYCLE_SAMPLES: int = int(SAMPLE_RATE * CYCLE_SECONDS)  # 176,000 samples per cycle
