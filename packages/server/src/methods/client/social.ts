// Filled in by the supporting-methods work (client-api.md §3–§4).
export {};
