// Filled in by the supporting-methods work (server-api.md §4).
export {};
