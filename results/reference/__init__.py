"""Published CHE reference tables, shipped with che as the data package `che.reference`."""
