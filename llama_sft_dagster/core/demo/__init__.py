"""The demo profile's offline inputs: a generated Bitext-style corpus and MultiWOZ-style dialogues."""
