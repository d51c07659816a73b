// fanfare.js
